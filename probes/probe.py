"""The probe: a linear or 2-layer MLP classifier over a boundary's hidden state, and its file format.

A probe lives in a folder: `probe.safetensors` (standardisation and weights) and `probe.json` (kind,
sizes, the model it was trained on, the boundary policy, the default threshold and the calibration table
that turns a tolerated risk into a threshold). Loading checks it against the served model
and refuses a mismatch in one sentence, because a probe read from another model's hidden states would
score noise with confidence.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from probexit.kernels.weights import ProbeWeights
from probexit.probes.boundary import BoundaryPolicyConfig, UnknownBoundaryModeError
from probexit.probes.features import UnknownFeatureError, check_groups, feature_count
from probexit.probes.fingerprint import ModelIdentity
from probexit.probes.rules import DEFAULT_THRESHOLD, NEVER

FORMAT_NAME, FORMAT_VERSION = "probexit-probe", 1
CONFIG_FILE, WEIGHTS_FILE = "probe.json", "probe.safetensors"


READER_LABELS, FORCED_LABELS = "reader", "forced"
LABEL_KINDS = (READER_LABELS, FORCED_LABELS)


class ProbeFileError(ValueError):
    """A probe file that is missing, corrupt, or made for another model."""


RISK_MEASURES = {
    "harm": "the share of requests whose answer early exit turns from right into wrong",
    "premature_exit": "the share of exits that stop on a wrong intermediate answer",  # files without the field
}


@dataclass(frozen=True)
class CalibrationPoint:
    max_risk: float  # tolerated risk (ProbeConfig.risk_measure says which)
    threshold: float  # the smallest threshold certified for it (NEVER: no threshold is)
    harm_calibration: float | None = None  # the harm rate it realised on the calibration split (None: not recorded)
    harm_test: float | None = None  # ... and on the held-out test split

    @classmethod
    def from_json(cls, data: dict) -> CalibrationPoint:
        optional = {key: float(data[key]) for key in ("harm_calibration", "harm_test") if data.get(key) is not None}
        return cls(float(data["max_risk"]), float(data["threshold"]), **optional)


@dataclass
class ProbeConfig:
    kind: str  # "linear" or "mlp"
    hidden_size: int
    width: int  # 0 for linear
    model: ModelIdentity
    boundary_policy: BoundaryPolicyConfig = field(default_factory=BoundaryPolicyConfig)
    # What a boundary's training label said: the answer read in the chunk was right (reader), or the answer the
    # model gives when its thinking is ended there was right (forced: what the user gets). The calibration table
    # certifies harm in the same terms.
    labels: str = READER_LABELS
    # What the probe reads beside the hidden state (probes.features groups, in order); the weights' inputs are the
    # hidden state's `hidden_size` numbers followed by these.
    inputs: tuple[str, ...] = ()
    default_threshold: float = DEFAULT_THRESHOLD
    calibration: list[CalibrationPoint] = field(default_factory=list)
    calibration_method: str = ""
    risk_measure: str = "harm"  # what the table's max_risk bounds (RISK_MEASURES)
    training: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in ("linear", "mlp") or (self.kind == "linear") != (self.width == 0):
            raise ProbeFileError(
                f"probe kind {self.kind!r} with width {self.width} is not a linear (0) or mlp (>0) probe"
            )
        if not 0.0 <= self.default_threshold <= NEVER:
            raise ProbeFileError(f"probe default threshold {self.default_threshold} lies outside [0, {NEVER}]")
        if self.risk_measure not in RISK_MEASURES:
            raise ProbeFileError(f"probe risk measure {self.risk_measure!r} is not one of {', '.join(RISK_MEASURES)}")
        if self.labels not in LABEL_KINDS:
            raise ProbeFileError(f"probe labels {self.labels!r} are not one of {', '.join(LABEL_KINDS)}")
        try:
            check_groups(self.inputs)
        except UnknownFeatureError as error:
            raise ProbeFileError(f"{error}: this server cannot give the probe what it reads") from error

    def threshold_for_risk(self, max_risk: float) -> float:
        """The threshold certified for a tolerated risk (the largest table risk <= max_risk)."""
        if not self.calibration:
            raise ValueError(
                "this probe has no calibration table, so early_exit.max_risk cannot be used; give a threshold"
            )
        eligible = [point for point in self.calibration if point.max_risk <= max_risk + 1e-12]
        if not eligible:
            return NEVER  # stricter than any certified level
        return max(eligible, key=lambda point: point.max_risk).threshold

    def to_json(self) -> dict:
        data = asdict(self)
        data["boundary_policy"] = self.boundary_policy.to_json()
        return {"format": FORMAT_NAME, "version": FORMAT_VERSION, **data}

    @classmethod
    def from_json(cls, data: dict) -> ProbeConfig:
        if data.get("format") != FORMAT_NAME or data.get("version") != FORMAT_VERSION:
            raise ProbeFileError(
                f"not a {FORMAT_NAME} v{FORMAT_VERSION} file (format={data.get('format')!r}, "
                f"version={data.get('version')!r})"
            )
        try:
            policy = BoundaryPolicyConfig.from_json(data.get("boundary_policy", {}))
        except UnknownBoundaryModeError as error:
            raise ProbeFileError(f"{error}: this probe needs a newer probexit (or retrain it here)") from error
        try:
            return cls(
                kind=data["kind"],
                hidden_size=int(data["hidden_size"]),
                width=int(data["width"]),
                model=ModelIdentity(**data["model"]),
                boundary_policy=policy,
                labels=data.get("labels", READER_LABELS),  # a file written before the field had reader labels
                inputs=tuple(data.get("inputs", ())),
                default_threshold=float(data.get("default_threshold", DEFAULT_THRESHOLD)),
                calibration=[CalibrationPoint.from_json(p) for p in data.get("calibration", [])],
                calibration_method=data.get("calibration_method", ""),
                # a file written before the field existed certified premature exits
                risk_measure=data.get("risk_measure", "premature_exit"),
                training=data.get("training", {}),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ProbeFileError(f"probe config is incomplete or malformed: {error}") from error


class ProbeModel(torch.nn.Module):
    """The trainable probe: standardise, then linear or Linear -> ReLU -> Linear, one logit."""

    def __init__(self, hidden_size: int, width: int, mean: torch.Tensor, scale: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.float().clone())  # (H,)
        self.register_buffer("scale", scale.float().clamp_min(1e-6).clone())  # (H,)
        self.width = width
        self.net = (
            torch.nn.Linear(hidden_size, 1)
            if width == 0
            else torch.nn.Sequential(torch.nn.Linear(hidden_size, width), torch.nn.ReLU(), torch.nn.Linear(width, 1))
        )

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.net((hidden.float() - self.mean) / self.scale).squeeze(-1)  # (N,) logits

    def weights(self, n_features: int = 0) -> ProbeWeights:
        """The scoring paths' weights; the last `n_features` inputs are per-row features beside the hidden state."""
        if self.width == 0:
            layer = self.net
            return ProbeWeights.from_tensors(
                self.mean, self.scale, layer.weight[0].detach(), layer.bias.detach(), n_features=n_features
            )
        first, _, second = self.net
        return ProbeWeights.from_tensors(
            self.mean,
            self.scale,
            first.weight.detach().T,
            first.bias.detach(),
            second.weight[0].detach(),
            second.bias.detach(),
            n_features=n_features,
        )


@dataclass
class Probe:
    config: ProbeConfig
    weights: ProbeWeights

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {
            name: getattr(self.weights, name).detach().float().cpu().contiguous()
            for name in ("mean", "scale", "w1", "b1", "w2", "b2")
            if getattr(self.weights, name) is not None
        }
        save_file(tensors, str(directory / WEIGHTS_FILE))
        (directory / CONFIG_FILE).write_text(json.dumps(self.config.to_json(), indent=2) + "\n")

    @classmethod
    def load(cls, directory: str | Path) -> Probe:
        directory = Path(directory)
        if not (directory / CONFIG_FILE).is_file() or not (directory / WEIGHTS_FILE).is_file():
            raise ProbeFileError(f"no probe at {directory} (expected {CONFIG_FILE} and {WEIGHTS_FILE} in that folder)")
        try:
            config = ProbeConfig.from_json(json.loads((directory / CONFIG_FILE).read_text()))
        except json.JSONDecodeError as error:
            raise ProbeFileError(f"probe config {directory / CONFIG_FILE} is not valid JSON: {error}") from error
        try:
            tensors = load_file(str(directory / WEIGHTS_FILE))
            weights = ProbeWeights.from_tensors(
                *(tensors.get(name) for name in ("mean", "scale", "w1", "b1", "w2", "b2")),
                n_features=feature_count(config.inputs),
            )
        except Exception as error:  # safetensors raises its own types for truncated or garbled files
            raise ProbeFileError(f"probe weights {directory / WEIGHTS_FILE} are corrupt: {error}") from error
        if weights.hidden_size != config.hidden_size or weights.width != config.width:
            raise ProbeFileError(
                f"probe weights ({weights.input_size} inputs, width {weights.width}) disagree with {CONFIG_FILE} "
                f"(hidden {config.hidden_size} and {list(config.inputs)}; width {config.width})"
            )
        if not all(math.isfinite(v) for v in torch.cat([t.flatten() for t in tensors.values()]).tolist()):
            raise ProbeFileError(f"probe weights {directory / WEIGHTS_FILE} contain NaN or infinite values")
        return cls(config, weights)

    def check_compatible(self, served: ModelIdentity) -> None:
        """Refuse, in one sentence, a probe trained on another model."""
        problem = self.config.model.mismatch(served)
        if problem:
            raise ProbeFileError(
                f"the probe was trained on {self.config.model.name!r} but the served model "
                f"{served.name!r} differs ({problem}); train a probe for this model with `probexit train probe`"
            )
