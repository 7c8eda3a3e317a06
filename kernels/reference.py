"""The probe's function outside Triton: the plain torch reference (the kernel's specification, and the path
for tensors on devices without the kernel) and the numpy host path a CPU engine's decode step runs."""

from __future__ import annotations

import array
import dataclasses
import math
import operator

import numpy as np
import torch

from probexit.kernels.weights import ProbeWeights, check_inputs, check_row_range


def score_boundary_rows_reference(hidden, rows, weights, thresholds, features=None):
    """Plain torch version of the kernel: same arguments, same results (scores to fp32 rounding)."""
    thresholds = check_inputs(hidden, rows, weights, thresholds, features)
    return reference_math(hidden, rows, weights, thresholds, features)


def reference_math(hidden, rows, weights: ProbeWeights, thresholds, features=None):
    """The reference without validation (what the benchmark compiles), accumulating in fp32."""
    on_device = rows.device.type != "cpu"
    if on_device:  # not range-checked on the host, as in the kernel: unreadable rows score NaN
        readable = (rows >= 0) & (rows < hidden.shape[0])
        rows = torch.where(readable, rows, 0)
    x = hidden.index_select(0, rows).float()  # (N, H)
    if weights.n_features:
        x = torch.cat([x, features.float()], dim=1)  # (N, H + K)
    z = (x - weights.mean.float()) / weights.scale.float()
    # Scalar biases are expanded, not broadcast: addmv with a 0-d bias returns a 0-d tensor when N is 0.
    if weights.width == 0:
        logits = torch.addmv(weights.b1.float().expand(len(z)), z, weights.w1.float())  # (N,)
    else:
        activations = torch.addmm(weights.b1.float(), z, weights.w1.float()).relu_()  # (N, W)
        logits = torch.addmv(weights.b2.float().expand(len(z)), activations, weights.w2.float())  # (N,)
    scores = torch.sigmoid(logits)
    if on_device:
        scores = scores.masked_fill(~readable, float("nan"))
    return scores, scores >= thresholds


def score_boundary_rows_numpy(hidden, rows, weights, thresholds, features=None):
    """The reference's function in numpy, for CPU tensors: the dispatcher's face of `HostProbe`.
    Same arguments and results as the reference (scores to fp32 rounding)."""
    check_inputs(hidden, rows, weights, thresholds, features, range_check=False)
    if hidden.device.type != "cpu":
        raise ValueError("the numpy backend scores CPU tensors only; use backend='auto'")
    index = rows.tolist()
    if index:
        check_row_range(min(index), max(index), hidden.shape[0])
    scores = weights.host.scores(hidden, index, features.tolist() if weights.n_features else None)
    exits = [score >= threshold for score, threshold in zip(scores, float32_values(thresholds.tolist()))]
    return torch.tensor(scores, dtype=torch.float32), torch.tensor(exits, dtype=torch.bool)


WIDE_MLP = 64  # hidden units past which the host path runs an MLP's second layer in numpy


@dataclasses.dataclass(frozen=True, eq=False)
class HostProbe:
    """The probe on CPU tensors with as few library calls as the math allows: what a CPU engine's decode step
    runs for its few boundary rows (through `score_boundary_rows_numpy`, or directly from the probe runtime).

    Why so frugal: in vLLM's CPU worker the scoring runs once per step, right after the forward pass, and each
    numpy or torch call then costs about ten times what it does in a warm loop (cold caches; the same calls
    repeated in the worker run at full speed). Measured there per step: the tensor's numpy view 16 us, a
    fancy-indexed gather of the rows 34 us against 5 us for plain row views, a float32 x float64 matmul 35 us
    against 23 us for float32 row dots, a torch.mm over the whole batch 53 us. So the standardisation is
    folded into the first layer (x @ (w1 / scale) + b1 - (mean / scale) @ w1, computed in float64, stored in
    float32), each row is a view and one dot, and the rest (bias, ReLU, second layer, sigmoid, rounding the
    scores to fp32 like every other backend) is plain Python over a few numbers. A probe's K features come as
    Python floats (the decode step computes them so) and meet the folded first layer's last K rows: a Python
    dot for a linear probe, one float64 numpy dot per row for an MLP. A wide MLP (more than WIDE_MLP units) takes
    its ReLU and second layer in numpy too: past a few dozen units two numpy calls cost less than the Python loop
    (width 256: about 45 us a row in Python).
    """

    w1: np.ndarray  # (H,) or (H, W) float32: the hidden state's rows of the first layer, standardisation folded in
    b1: float | list[float]  # () or (W,)
    w2: list[float] | None  # (W,) MLP only
    b2: float | None
    feature_w1: list[float] | np.ndarray | None = None  # the features' rows, folded: (K,) floats or (K, W) float64
    n_features: int = 0
    wide: tuple[np.ndarray, np.ndarray] | None = None  # (b1, w2) as float64 arrays, for an MLP wider than WIDE_MLP

    @classmethod
    def from_weights(cls, weights: ProbeWeights) -> HostProbe:
        as64 = {name: None if t is None else t.detach().cpu().double().numpy() for name, t in weights.tensors().items()}
        w1 = as64["w1"] / (as64["scale"][:, None] if as64["w1"].ndim == 2 else as64["scale"])
        b1 = as64["b1"] - (as64["mean"] / as64["scale"]) @ as64["w1"]
        w2 = None if as64["w2"] is None else as64["w2"].tolist()
        h = weights.hidden_size
        feature_w1 = None
        if weights.n_features:
            feature_w1 = np.ascontiguousarray(w1[h:]) if weights.width else w1[h:].tolist()
        return cls(
            np.ascontiguousarray(w1[:h], dtype=np.float32),
            b1.tolist(),
            w2,
            None if as64["b2"] is None else float(as64["b2"]),
            feature_w1,
            weights.n_features,
            (b1, as64["w2"]) if weights.width > WIDE_MLP else None,
        )

    def scores(self, hidden: torch.Tensor, rows: list[int], features: list[list[float]] | None = None) -> list[float]:
        """Sigmoid scores of hidden[rows] (a CPU tensor of any float dtype; rows already range-checked).
        features: for a probe that reads K > 0 of them, K floats per row in `rows`' order; else None."""
        if self.n_features:
            self._check_features(features, len(rows))
        if not rows:
            return []
        if hidden.dtype != torch.float32:  # numpy has no bfloat16: convert only the rows
            hidden, rows = hidden.detach()[rows].float(), range(len(rows))
        states = hidden.detach().numpy() if hidden.requires_grad else hidden.numpy()
        logits = []
        for i, row in enumerate(rows):
            if self.w2 is None:
                pre = np.dot(states[row], self.w1).tolist()  # a float
                if self.n_features:
                    pre += math.fsum(map(operator.mul, features[i], self.feature_w1))
                logits.append(pre + self.b1)
                continue
            pre = np.dot(states[row], self.w1)  # (W,) float32
            pre = pre if not self.n_features else pre + np.dot(features[i], self.feature_w1)
            if self.wide is not None:  # np.maximum keeps NaN, as the ReLU below does
                b1, w2 = self.wide
                logits.append(float(np.dot(np.maximum(pre + b1, 0.0), w2)) + self.b2)
                continue
            # max(a, 0.0) is a ReLU that keeps NaN (max returns its first argument when none is larger)
            logits.append(math.fsum(w * max(a + b, 0.0) for w, a, b in zip(self.w2, pre.tolist(), self.b1)) + self.b2)
        return float32_values([_sigmoid(logit) for logit in logits])

    def _check_features(self, features, n_rows: int) -> None:
        if features is None or len(features) != n_rows or any(len(values) != self.n_features for values in features):
            raise ValueError(
                f"this probe reads {self.n_features} features per boundary row: pass a list of {n_rows} "
                f"lists of {self.n_features} floats, one per row"
            )


def _sigmoid(logit: float) -> float:
    if logit >= 0:
        return 1.0 / (1.0 + math.exp(-logit))
    small = math.exp(logit)  # no overflow for very negative logits
    return small / (1.0 + small)


def float32_values(values: list[float]) -> list[float]:
    """Python floats rounded to float32, in one call (decisions compare fp32 scores with fp32 thresholds)."""
    return array.array("f", values).tolist()
