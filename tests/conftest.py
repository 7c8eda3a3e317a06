"""Session-wide test set-up: `gpu` tests skip themselves where CUDA is absent."""
from __future__ import annotations

import os

import pytest

# On 2 shared cores OpenMP busy-waiting can slow torch several-fold (PLATFORM.md).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def pytest_collection_modifyitems(config, items):
    import torch

    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
