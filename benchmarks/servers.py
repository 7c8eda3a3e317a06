"""Starting and stopping a server process for the benchmarks, which talk to servers over HTTP only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from probexit.engine.constants import CPU_KV_CACHE_ENV, CPU_KV_CACHE_GIB


def free_port() -> int:
    with socket.socket() as probe_socket:
        probe_socket.bind(("127.0.0.1", 0))
        return probe_socket.getsockname()[1]


def probexit_command(port: int, extra: list[str] | None = None) -> list[str]:
    """`probexit serve` on 127.0.0.1:port (the embedded default unless `extra` names a model), as a process of
    this Python: every benchmark and test that starts a server starts it with this command."""
    return [sys.executable, "-m", "probexit.cli", "serve", "--port", str(port), "--host", "127.0.0.1", *(extra or [])]


def start(command: list[str], port: int, log: Path, timeout: float = 600) -> tuple[subprocess.Popen, float]:
    """Start a server and wait for a healthy /health; returns the process and its start-up seconds."""
    env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # the server may be vLLM's own, which sets neither
    env.setdefault(CPU_KV_CACHE_ENV, CPU_KV_CACHE_GIB)
    started, process = time.monotonic(), None
    try:
        with open(log, "w") as handle, _sigterm_held():
            process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=env)
        while time.monotonic() - started < timeout:
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with {process.returncode} while starting; see {log}")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    return process, time.monotonic() - started
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"the server did not become healthy in {timeout} s; see {log}")
    except BaseException:  # a timeout, Ctrl-C or SIGTERM while it starts: the caller never gets it to stop
        if process is not None:
            stop(process)
        raise


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Sigterm:
    held = False  # inside `_sigterm_held`
    pending = False  # a SIGTERM came while held


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """Inside, SIGTERM raises SystemExit instead of ending Python at once, so the `finally` blocks that stop a
    server this process started still run when a supervisor (a CI step, `timeout`, `kill`) stops the benchmark.
    Outside the main thread (where Python cannot install handlers) it changes nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def exit_on_sigterm(signum, frame):
        if _Sigterm.held:
            _Sigterm.pending = True
            return
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, exit_on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _sigterm_held() -> Iterator[None]:
    """Holds back the SystemExit of a SIGTERM that comes inside until the block has ended: raised inside
    `subprocess.Popen`, after its fork, it would leave a child that nobody knows to stop."""
    _Sigterm.held = True
    try:
        yield
    finally:
        _Sigterm.held = False
    if _Sigterm.pending:
        _Sigterm.pending = False
        raise SystemExit(128 + signal.SIGTERM)
