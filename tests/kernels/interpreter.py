"""A worker process in which Triton interprets the probe kernel on CPU.

TRITON_INTERPRET=1 only takes effect when it is set before triton is first imported (the docstring of
kernels/probe_score.py says why), and setting it in the pytest process would switch the "auto" backend of
every other test package to the slow interpreter. So the interpreted kernel runs in one spawned worker per
session, whose environment is set before it imports anything of probexit; this module imports no triton.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager


@contextmanager
def interpreter_worker() -> Iterator[Callable]:
    """Yield `call(name, *args, **kwargs)`: run <name> of probexit.kernels.triton_kernel (else of the dispatcher,
    probexit.kernels.probe_score) in the worker."""
    context = multiprocessing.get_context("spawn")  # a fork would inherit this process's imported triton
    with ProcessPoolExecutor(1, mp_context=context, initializer=_enter_interpreter) as pool:
        yield lambda name, *args, **kwargs: pool.submit(_call, name, *args, **kwargs).result()


def _enter_interpreter() -> None:
    os.environ["TRITON_INTERPRET"] = "1"
    import torch

    torch.set_num_threads(1)  # the pytest process waits meanwhile; the machine is shared


def _call(name: str, *args, **kwargs):
    from probexit.kernels import probe_score, triton_kernel

    if not triton_kernel.kernel_is_interpreted():
        raise RuntimeError("triton was imported before TRITON_INTERPRET=1 was set in the worker")
    return getattr(triton_kernel if hasattr(triton_kernel, name) else probe_score, name)(*args, **kwargs)
