"""What identifies a model to a probe: name, hidden size, vocabulary size and a fingerprint of weights.

The fingerprint hashes every safetensors header (tensor names, dtypes, shapes) and the bytes of the final
norm and the first MiB of the token embedding: cheap for a 70B checkpoint, yet any fine-tune changes it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path

SAMPLED_TENSOR_SUFFIXES = ("norm.weight", "embed_tokens.weight")
SAMPLE_BYTES = 1 << 20


@dataclass(frozen=True)
class ModelIdentity:
    name: str
    hidden_size: int
    vocab_size: int
    fingerprint: str

    def mismatch(self, other: ModelIdentity) -> str:
        """'' when `other` is the same model, else what differs."""
        for attribute in ("hidden_size", "vocab_size", "fingerprint"):
            mine, theirs = getattr(self, attribute), getattr(other, attribute)
            if mine != theirs:
                return f"{attribute} {mine} vs {theirs}"
        return ""


def model_identity(model_dir: str | Path, name: str | None = None) -> ModelIdentity:
    """The identity of a Hugging Face model folder (config.json plus safetensors files)."""
    model_dir = Path(model_dir)
    config_path = model_dir / "config.json"
    if not config_path.is_file():
        raise ValueError(f"{model_dir} is not a model folder (no config.json)")
    config = json.loads(config_path.read_text())
    text_config = config.get("text_config", config)
    return ModelIdentity(
        name=name or model_dir.name,
        hidden_size=int(text_config["hidden_size"]),
        vocab_size=int(text_config["vocab_size"]),
        fingerprint=weights_fingerprint(model_dir),
    )


def weights_fingerprint(model_dir: Path) -> str:
    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise ValueError(f"{model_dir} holds no .safetensors weights to fingerprint")
    digest = hashlib.sha256()
    for path in files:
        with open(path, "rb") as handle:
            header_size = struct.unpack("<Q", handle.read(8))[0]
            header = json.loads(handle.read(header_size))
            digest.update(json.dumps({k: v for k, v in header.items() if k != "__metadata__"}, sort_keys=True).encode())
            for tensor_name in sorted(header):
                if tensor_name != "__metadata__" and tensor_name.endswith(SAMPLED_TENSOR_SUFFIXES):
                    start, end = header[tensor_name]["data_offsets"]
                    handle.seek(8 + header_size + start)
                    digest.update(handle.read(min(end - start, SAMPLE_BYTES)))
    return digest.hexdigest()[:32]


def json_digest(value) -> str:
    """A short digest of any JSON-serialisable value: what cached results are keyed on (the questions,
    problems or settings they were made from), so that a rerun never reuses another input's results."""
    return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]
