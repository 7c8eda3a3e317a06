"""The probe's weights as the scoring paths take them, and the checks every path runs on its inputs.

Light: torch only (no Triton), so that loading a probe file imports no kernel.
"""

from __future__ import annotations

import dataclasses
import functools

import torch

FLOAT_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


@dataclasses.dataclass(frozen=True, eq=False)  # tensors: compare by identity
class ProbeWeights:
    """A probe's parameters, built once per probe and moved to the serving device and dtype.

    The probe's input is x = [hidden state (H) ; features (K)]: the boundary row's hidden state, then K >= 0
    numbers about the boundary that the caller computes per row (`n_features`; 0 for a probe of the hidden
    state alone). Standardisation z = (x - mean) / scale (scale > 0) over all D = H + K inputs, then
    linear probe (width 0): logit = z @ w1 + b1, with w1 (D,) and b1 a scalar; w2 and b2 are None;
    MLP probe (width W): logit = relu(z @ w1 + b1) @ w2 + b2, with w1 (D, W), b1 (W,), w2 (W,), b2 a scalar.
    All tensors share one device and one float dtype and are stored contiguous.
    """

    mean: torch.Tensor  # (D,)
    scale: torch.Tensor  # (D,)
    w1: torch.Tensor  # (D,) linear, (D, W) MLP
    b1: torch.Tensor  # () linear, (W,) MLP
    w2: torch.Tensor | None = None  # (W,) MLP only
    b2: torch.Tensor | None = None  # () MLP only
    n_features: int = 0  # K: the last K of the D inputs are the per-row features

    def __post_init__(self) -> None:
        _check_weight_tensors(self)
        for name, value in self.tensors().items():
            if value is not None:
                object.__setattr__(self, name, value.contiguous())
        if not bool((self.scale > 0).all()):
            raise ValueError("ProbeWeights.scale must be positive everywhere (it divides the probe's inputs)")

    @classmethod
    def from_tensors(cls, mean, scale, w1, b1, w2=None, b2=None, *, n_features=0, device=None, dtype=torch.float32):
        """Build from tensors, arrays or lists, detached (a probe here only scores); 1-element biases become scalars.
        mean, scale and w1 cover the hidden state's inputs followed by the `n_features` features."""

        def convert(value, scalar=False):
            if value is None:
                return None
            tensor = torch.as_tensor(value).detach().to(device=device, dtype=dtype)
            return tensor.reshape(()) if scalar and tensor.numel() == 1 else tensor

        linear = w2 is None
        return cls(
            convert(mean),
            convert(scale),
            convert(w1),
            convert(b1, scalar=linear),
            convert(w2),
            convert(b2, scalar=True),
            n_features,
        )

    def tensors(self) -> dict[str, torch.Tensor | None]:
        """The parameter tensors by field name (w2 and b2 None for a linear probe)."""
        return {name: getattr(self, name) for name in TENSOR_FIELDS}

    @property
    def input_size(self) -> int:
        """D = H + K: the hidden state's size plus the number of features."""
        return self.mean.shape[0]

    @property
    def hidden_size(self) -> int:
        """H: the size of the hidden state the probe reads (its first H inputs)."""
        return self.input_size - self.n_features

    @property
    def width(self) -> int:
        """0 for a linear probe, else the hidden layer's width."""
        return 0 if self.w2 is None else self.w1.shape[1]

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def dtype(self) -> torch.dtype:
        return self.mean.dtype

    @functools.cached_property
    def host(self):
        """The numpy path's form of these weights (`reference.HostProbe`), made once."""
        from probexit.kernels.reference import HostProbe

        return HostProbe.from_weights(self)

    def to(self, device=None, dtype=None) -> ProbeWeights:
        moved = {name: None if t is None else t.to(device=device, dtype=dtype) for name, t in self.tensors().items()}
        return ProbeWeights(**moved, n_features=self.n_features)


TENSOR_FIELDS = ("mean", "scale", "w1", "b1", "w2", "b2")  # ProbeWeights' tensors, in constructor order


def _check_weight_tensors(weights: ProbeWeights) -> None:
    tensors = [t for t in weights.tensors().values() if t is not None]
    if not all(isinstance(t, torch.Tensor) for t in tensors):
        raise ValueError("ProbeWeights fields must be tensors (use ProbeWeights.from_tensors for lists or arrays)")
    if len({t.device for t in tensors}) != 1 or len({t.dtype for t in tensors}) != 1:
        raise ValueError("ProbeWeights tensors must share one device and one dtype (use .to(device, dtype))")
    if weights.mean.dtype not in FLOAT_DTYPES:
        raise ValueError(f"ProbeWeights dtype must be bfloat16, float16 or float32, not {weights.mean.dtype}")
    d = weights.mean.shape[0] if weights.mean.dim() == 1 else -1
    if d < 1 or weights.scale.shape != (d,):
        raise ValueError(
            f"ProbeWeights.mean and .scale must both be (D,) vectors of the probe's inputs; got "
            f"{tuple(weights.mean.shape)} and {tuple(weights.scale.shape)}"
        )
    k = weights.n_features
    if not isinstance(k, int) or isinstance(k, bool) or not 0 <= k < d:
        raise ValueError(
            f"ProbeWeights.n_features must be an integer from 0 to {d - 1} (of the probe's {d} inputs, the "
            f"hidden state takes at least one); got {k!r}"
        )
    if (weights.w2 is None) != (weights.b2 is None):
        raise ValueError("ProbeWeights.w2 and .b2 go together: both for an MLP probe, neither for a linear one")
    if weights.w2 is None:
        expected = {"w1": (d,), "b1": ()}
    else:
        width = weights.w2.shape[0] if weights.w2.dim() == 1 else -1
        expected = {"w1": (d, width), "b1": (width,), "w2": (width,), "b2": ()}
    for name, shape in expected.items():
        if tuple(getattr(weights, name).shape) != shape or min(shape, default=1) < 1:
            raise ValueError(
                f"ProbeWeights.{name} must have shape {shape} for {d} inputs; got {tuple(getattr(weights, name).shape)}"
            )


def check_inputs(hidden, rows, weights, thresholds, features=None, *, range_check: bool = True) -> torch.Tensor:
    """Raise ValueError on anything the kernel cannot score; return the thresholds as float32.
    range_check=False leaves the host-side row range check to the caller (the numpy path does it in numpy)."""
    if not all(isinstance(t, torch.Tensor) for t in (hidden, rows, thresholds)):
        raise ValueError("hidden, rows and thresholds must be torch tensors")
    if not isinstance(weights, ProbeWeights):
        raise ValueError(f"weights must be ProbeWeights, not {type(weights).__name__}")
    if hidden.dim() != 2 or hidden.dtype not in FLOAT_DTYPES:
        raise ValueError(
            f"hidden must be a (batch, hidden_size) bfloat16, float16 or float32 tensor; "
            f"got {hidden.dtype} of shape {tuple(hidden.shape)}"
        )
    if rows.dim() != 1 or rows.dtype not in (torch.int32, torch.int64):
        raise ValueError(f"rows must be a 1-D int32 or int64 tensor; got {rows.dtype} of shape {tuple(rows.shape)}")
    if thresholds.shape != rows.shape or not thresholds.is_floating_point():
        raise ValueError(
            f"thresholds must be a float tensor shaped like rows {tuple(rows.shape)}; "
            f"got {thresholds.dtype} of shape {tuple(thresholds.shape)}"
        )
    if weights.hidden_size != hidden.shape[1]:
        raise ValueError(
            f"the probe expects hidden size {weights.hidden_size}, the hidden states have {hidden.shape[1]}"
        )
    _check_features(features, rows.shape[0], weights.n_features)
    on_other_device = [
        t for t in (rows, thresholds, features, weights.mean) if t is not None and t.device != hidden.device
    ]
    if on_other_device:
        raise ValueError(f"rows, thresholds, features and weights must be on hidden's device {hidden.device}")
    if range_check and rows.device.type == "cpu" and rows.numel():  # free on the host; on a device, a sync
        check_row_range(*(int(bound) for bound in torch.aminmax(rows)), hidden.shape[0])
    return thresholds.to(torch.float32) if range_check else thresholds


def _check_features(features, n_rows: int, n_features: int) -> None:
    """features: (N, K) float, row i the features of boundary row i; None only for a probe that reads none."""
    if features is None:
        if n_features:
            raise ValueError(
                f"this probe reads {n_features} features beside the hidden state: pass features, "
                f"a ({n_rows}, {n_features}) float tensor with one row per boundary row"
            )
        return
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"features must be a torch tensor or None, not {type(features).__name__}")
    if features.dim() != 2 or features.dtype not in FLOAT_DTYPES or tuple(features.shape) != (n_rows, n_features):
        raise ValueError(
            f"features must be a ({n_rows}, {n_features}) bfloat16, float16 or float32 tensor (one row of the "
            f"probe's {n_features} features per boundary row); got {features.dtype} of shape {tuple(features.shape)}"
        )


def check_row_range(low: int, high: int, batch: int) -> None:
    if low < 0 or high >= batch:
        raise ValueError(f"rows must index hidden's {batch} rows; got values from {low} to {high}")
