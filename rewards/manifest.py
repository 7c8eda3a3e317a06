"""The reward-model folder's manifest: which member is the target, the ensemble, their calibration, and how
scores become uncertainty (the folder's layout is described in `probexit.rewards.ensemble`)."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

from probexit.probes.markers import THINK_END, THINK_START

MANIFEST = "manifest.json"
FORMAT = "probexit-reward/1"
LAST_TOKEN = "last-token"  # sequence classifiers: the reward is read from the last token's state
TOKEN_SURPRISE = "token-surprise"  # heads summing over the answer's tokens a frozen LM's surprise at them
HEADS = (LAST_TOKEN, TOKEN_SURPRISE)


class RewardModelError(ValueError):
    """A reward-model folder that cannot be served; the message names the folder and the problem."""


@dataclass(frozen=True)
class MemberCard:
    """One model of the folder: where it lives, what it was initialised from, its calibration."""

    path: str  # a sub-folder of the reward folder
    initialised_from: str  # e.g. "policy /tmp/policy, layers 0-1"
    mean: float = 0.0  # raw reward mean on the calibration answers
    std: float = 1.0  # raw reward std on the calibration answers
    seed: int | None = None
    data: str = ""  # what it was trained on, in words


@dataclass(frozen=True)
class RewardManifest:
    """manifest.json: the target, its ensemble, the tokenizer and how scores become uncertainty."""

    target: MemberCard
    ensemble: tuple[MemberCard, ...]
    tokenizer: str = "tokenizer"
    name: str = "reward"
    max_length: int = 1024  # longest rendered conversation in tokens
    spread_floor: float = 0.1  # lower bound of the ensemble std in z (members may agree by chance)
    z_threshold: float = 1.96  # z at or above which an answer is flagged out of distribution
    think_start: str | None = THINK_START  # the thinking markers (None: the model does not think)
    think_end: str | None = THINK_END
    head: str = LAST_TOKEN  # how members read a conversation: LAST_TOKEN or TOKEN_SURPRISE
    backbone: str | None = None  # TOKEN_SURPRISE: the sub-folder of the causal LM shared by every member
    ensemble_backbone: str | None = None  # TOKEN_SURPRISE: the ensemble's own LM sub-folder (None: `backbone`)
    format: str = FORMAT
    notes: dict = field(default_factory=dict)  # provenance: training job, round, metrics

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> RewardManifest:
        if data.get("format") != FORMAT:
            raise RewardModelError(f"unknown format {data.get('format')!r} (expected {FORMAT!r})")
        members = {"target": MemberCard(**data["target"]), "ensemble": tuple(MemberCard(**m) for m in data["ensemble"])}
        return cls(**{**data, **members})


def read_manifest(folder: Path) -> RewardManifest:
    path = folder / MANIFEST
    if not path.is_file():
        raise RewardModelError(f"{folder}: no {MANIFEST} (a reward folder is written by `probexit train advrm`)")
    try:
        manifest = RewardManifest.from_json(json.loads(path.read_text()))
    except RewardModelError as error:
        raise RewardModelError(f"{path}: {error}") from None
    except (ValueError, TypeError, KeyError) as error:
        raise RewardModelError(f"{path} is not a valid reward manifest: {error}") from None
    if manifest.head not in HEADS:
        raise RewardModelError(f"{path}: unknown head {manifest.head!r} (known: {', '.join(HEADS)})")
    if manifest.head == TOKEN_SURPRISE and not manifest.backbone:
        raise RewardModelError(f"{path}: a {TOKEN_SURPRISE} head needs a backbone sub-folder")
    if manifest.ensemble_backbone and manifest.head != TOKEN_SURPRISE:
        raise RewardModelError(f"{path}: only {TOKEN_SURPRISE} heads read an ensemble backbone")
    if not manifest.ensemble:
        raise RewardModelError(f"{path}: the ensemble is empty; uncertainty needs at least one other model")
    if any(card.std <= 0 or not math.isfinite(card.std) for card in (manifest.target, *manifest.ensemble)):
        raise RewardModelError(f"{path}: every calibration std must be a positive number")
    return manifest


def write_manifest(folder: Path, manifest: RewardManifest) -> None:
    (folder / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
