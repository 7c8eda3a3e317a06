"""The embedded default that `probexit serve` runs with no arguments: the tiny-world policy, probe and reward
model shipped in this package's `tinyworld/` folder (built by `probexit tinyworld build`), and where to find
them."""

from __future__ import annotations

import importlib.resources
from dataclasses import dataclass
from pathlib import Path

EMBEDDED_NAME = "tinyworld"  # the served model name of the embedded default
# The tiny policy is trained in float32 with short traces; vLLM's "auto" dtype and its default context
# would cost memory and precision for nothing. Applied only where the user did not set these flags.
EMBEDDED_ENGINE_DEFAULTS = {"dtype": "float32", "max_model_len": 1024}
# The offline engine of the jobs and benchmarks that run the tiny policy: eager (a compile would take longer than
# the run), with up to 128 sequences in a batch.
EMBEDDED_OFFLINE_ENGINE = {**EMBEDDED_ENGINE_DEFAULTS, "enforce_eager": True, "max_num_seqs": 128}


class MissingAssetsError(ValueError):
    """The embedded default is not part of this installation."""


@dataclass(frozen=True)
class EmbeddedPaths:
    policy: Path  # a Hugging Face model folder
    probe: Path  # a probe folder (probe.json + probe.safetensors)
    reward: Path  # the reward model folder

    @property
    def test_problems(self) -> Path:
        """The tiny world's held-out test problems (JSONL), what the benchmarks run on by default."""
        return self.policy.parent / "problems" / "test.jsonl"


def default_paths() -> EmbeddedPaths:
    """Where the embedded default's folders live (they may be missing; see `require_default_paths`)."""
    root = Path(str(importlib.resources.files("probexit.assets") / "tinyworld"))
    return EmbeddedPaths(policy=root / "policy", probe=root / "probe", reward=root / "reward")


def require_default_paths() -> EmbeddedPaths:
    """The embedded default's folders; a one-line error naming the fix when the policy is missing."""
    paths = default_paths()
    if not (paths.policy / "config.json").is_file():
        raise MissingAssetsError(
            f"the embedded tiny-world default is not installed (no model at {paths.policy}); pass --model "
            f"MODEL, or build it with `probexit tinyworld build --out {paths.policy.parent}`"
        )
    return paths
