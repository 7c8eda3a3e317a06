"""Fixtures of the kernel tests: the interpreter worker, shared by the whole session."""

from __future__ import annotations

import pytest

from tests.kernels.interpreter import interpreter_worker


@pytest.fixture(scope="session")
def interpreted():
    """`interpreted(name, *args, **kwargs)` runs triton_kernel.<name> (else probe_score.<name>) where Triton
    interprets the kernel."""
    with interpreter_worker() as call:
        yield call
