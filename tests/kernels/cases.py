"""Random probe inputs for the kernel tests, and the comparison every backend must pass."""

from __future__ import annotations

from typing import NamedTuple

import pytest
import torch

from probexit.kernels.probe_score import kernel_is_interpreted
from probexit.kernels.weights import ProbeWeights

SCORE_ATOL = 2e-6  # fp32 summation order over up to 8192 products; scores live in (0, 1)
DECISION_MARGIN = 1e-6  # decisions may differ only where the reference score is this close to the threshold


# For tests of this process's uninterpreted kernel: skipped when pytest itself runs with TRITON_INTERPRET=1.
uninterpreted = pytest.mark.skipif(kernel_is_interpreted(), reason="this process imported triton interpreted")


class Case(NamedTuple):
    hidden: torch.Tensor  # (B, H)
    rows: torch.Tensor  # (N,)
    weights: ProbeWeights
    thresholds: torch.Tensor  # (N,) fp32
    features: torch.Tensor | None = None  # (N, K), None when the probe reads none


FEATURE_MEAN, FEATURE_SCALE = 2.0, 3.0  # features live on their own scale (counts, log-odds), not the states'


def make_probe(hidden_size: int, width: int, dtype=torch.float32, seed: int = 0, n_features: int = 0) -> ProbeWeights:
    """A probe whose logits are of order one on standard-normal hidden states and on features drawn like
    `make_features`, so decisions are mixed; the features weigh about as much as the whole hidden state."""
    g = torch.Generator().manual_seed(seed)
    mean = 0.1 * torch.randn(hidden_size, generator=g)
    scale = 0.5 + torch.rand(hidden_size, generator=g)
    w1_shape = (hidden_size, width) if width else (hidden_size,)
    w1 = torch.randn(w1_shape, generator=g) / hidden_size**0.5
    if n_features:
        mean = torch.cat([mean, FEATURE_MEAN + 0.1 * torch.randn(n_features, generator=g)])
        scale = torch.cat([scale, FEATURE_SCALE * (0.5 + torch.rand(n_features, generator=g))])
        feature_w1 = torch.randn((n_features, *w1_shape[1:]), generator=g) / n_features**0.5
        w1 = torch.cat([w1, feature_w1])
    b1 = 0.1 * torch.randn(width if width else 1, generator=g)
    w2 = 2 * torch.randn(width, generator=g) / width**0.5 if width else None
    b2 = 0.1 if width else None
    return ProbeWeights.from_tensors(mean, scale, w1, b1, w2, b2, n_features=n_features, dtype=dtype)


def make_features(n_rows: int, n_features: int, dtype=torch.float32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed + 2)
    return (FEATURE_MEAN + FEATURE_SCALE * torch.randn(n_rows, n_features, generator=g)).to(dtype)


def make_case(
    batch: int,
    hidden_size: int,
    width: int,
    dtype=torch.float32,
    *,
    n_rows: int | None = None,
    weight_dtype=None,
    n_features: int = 0,
    feature_dtype=None,
    seed: int = 0,
) -> Case:
    """Rows drawn with replacement in random order (repeats and disorder), thresholds uniform in [0, 1); with
    n_features, each boundary row its own features (a repeated row's differ), in the states' dtype by default."""
    g = torch.Generator().manual_seed(seed + 1)
    n_rows = batch if n_rows is None else n_rows
    hidden = torch.randn(batch, hidden_size, generator=g).to(dtype)
    rows = torch.randint(0, max(batch, 1), (n_rows,), generator=g)
    thresholds = torch.rand(n_rows, generator=g)
    weights = make_probe(hidden_size, width, weight_dtype or dtype, seed, n_features)
    features = make_features(n_rows, n_features, feature_dtype or dtype, seed) if n_features else None
    return Case(hidden, rows, weights, thresholds, features)


def assert_matches(
    scores, exits, expected_scores, expected_exits, thresholds, atol=SCORE_ATOL, margin=DECISION_MARGIN
) -> None:
    """Scores within atol; decisions identical except where the expected score is within margin of the threshold."""
    assert scores.dtype == torch.float32 and exits.dtype == torch.bool
    torch.testing.assert_close(scores.cpu(), expected_scores.cpu(), rtol=0, atol=atol, equal_nan=True)
    decided = ((expected_scores - thresholds).abs() > margin).cpu()
    assert torch.equal(exits.cpu()[decided], expected_exits.cpu()[decided])


def to_device(case: Case, device) -> Case:
    return Case(*(None if part is None else part.to(device) for part in case))
