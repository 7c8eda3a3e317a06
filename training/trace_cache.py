"""Sampled reasoning traces with what the engine recorded at their boundaries, cached to disk in chunks.

Traces come from the same engine path the server uses (record mode of the early-exit processor), so the
hidden states are exactly those the served probe will read. Each chunk of prompts is written atomically
when done; a rerun loads finished chunks and samples only the rest, with the same seeds. The cache
remembers what it was sampled from (`key.json`: the model's fingerprint, the questions, the sampling
settings, the boundary policy); a rerun with anything else starts it over instead of mixing two models' traces or
two policies' boundaries. `seconds.json` records how long each chunk took to make and when, so a job that resumes
can still report its whole time.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from tqdm import tqdm

from probexit.engine.constants import EVAL_TEMPERATURE, EVAL_TOP_P
from probexit.probes.boundary import BoundaryPolicy
from probexit.probes.fingerprint import json_digest
from probexit.probes.rules import ExitSettings

if TYPE_CHECKING:  # the engine (vLLM) is imported by whoever makes one, not by reading this module
    from probexit.engine.offline import OfflineCompletion, OfflineEngine


@dataclass
class BoundaryRecord:
    token_index: int
    boundary_index: int
    paragraph_index: int
    thinking_tokens: int
    answer: str | None  # what a reader reads in the chunk (None: nothing, possible in the paragraph mode)
    hidden: torch.Tensor  # (H,) float16 on disk, the boundary token's last-layer state
    end_prob: float  # the model's own P(</think>) at the boundary
    min_logprob: float  # the chunk's lowest sampled-token log-probability
    mean_logprob: float


@dataclass
class TraceRecord:
    problem: int  # index into the problem file
    sample: int
    prompt_ids: list[int]
    token_ids: list[int]
    text: str
    finish_reason: str | None
    boundaries: list[BoundaryRecord] = field(default_factory=list)

    @property
    def thinking_tokens(self) -> int:
        return self.boundaries[-1].thinking_tokens if self.boundaries else len(self.token_ids)


@dataclass(frozen=True)
class SamplingConfig:
    """How the traces are sampled (a cache made with other settings is refused)."""

    samples_per_problem: int = field(default=4, metadata={"help": "Traces sampled per problem."})
    temperature: float = field(default=EVAL_TEMPERATURE, metadata={"help": "Sampling temperature of the traces."})
    top_p: float = field(default=EVAL_TOP_P, metadata={"help": "Nucleus sampling of the traces."})
    max_tokens: int = field(default=2048, metadata={"help": "Longest trace in tokens."})
    seed: int = field(default=0, metadata={"help": "Trace i of a chunk is sampled with seed + i; also the split's."})
    chunk_size: int = 256  # prompts per cached chunk

    def __post_init__(self):
        if self.samples_per_problem < 1 or self.max_tokens < 1 or self.chunk_size < 1:
            raise ValueError("samples_per_problem, max_tokens and chunk_size must be positive")


def sample_traces(
    engine: OfflineEngine,
    policy: BoundaryPolicy,
    questions: list[str],
    config: SamplingConfig,
    cache_dir: Path,
    model_fingerprint: str,
) -> list[TraceRecord]:
    cache_dir.mkdir(parents=True, exist_ok=True)
    # The boundary policy decides which boundaries a trace records (and what each chunk spans): part of the key.
    key = {
        "model": model_fingerprint,
        "sampling": asdict(config),
        "questions": json_digest(questions),
        "boundaries": policy.config.to_json(),
    }
    open_cache(cache_dir, key)
    jobs = [(problem, sample) for problem in range(len(questions)) for sample in range(config.samples_per_problem)]
    n_chunks = math.ceil(len(jobs) / config.chunk_size)
    records: list[TraceRecord] = []
    for chunk in tqdm(range(n_chunks), desc="sampling traces", unit="chunk"):
        path = cache_dir / f"chunk_{chunk:05d}.pt"
        if path.exists():
            records += torch.load(path, weights_only=False)
            continue
        started = time.monotonic()
        part = jobs[chunk * config.chunk_size : (chunk + 1) * config.chunk_size]
        prompts = engine.chat_prompts([questions[problem] for problem, _ in part])
        generations = engine.generate(
            prompts,
            temperature=config.temperature,
            top_p=config.top_p,
            max_tokens=config.max_tokens,
            seed=config.seed + chunk * config.chunk_size,
            logprobs=True,
            settings=ExitSettings(rule="none", record=True),
            progress=False,
        )
        done = [
            to_record(policy, problem, sample, generation) for (problem, sample), generation in zip(part, generations)
        ]
        torch.save(done, path.with_suffix(".tmp"))
        path.with_suffix(".tmp").replace(path)
        record_chunk_seconds(cache_dir, path.name, time.monotonic() - started)
        records += done
    return records


SECONDS_FILE = "seconds.json"


def record_chunk_seconds(cache_dir: Path, chunk: str, seconds: float) -> None:
    """Note that `chunk` of `cache_dir` took `seconds` to make, now."""
    path = cache_dir / SECONDS_FILE
    ledger = _ledger(cache_dir)
    ledger[chunk] = {"seconds": round(seconds, 2), "made": time.time()}
    path.with_suffix(".tmp").write_text(json.dumps(ledger, indent=1) + "\n")
    path.with_suffix(".tmp").replace(path)


def seconds_before(cache_dir: Path, since: float) -> float:
    """What the chunks of `cache_dir` that were made before `since` (a `time.time()`) took to make: the work an
    earlier, interrupted run of a job did for this one.

    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> for name in ("chunk_00000.pt", "chunk_00001.pt"):
    ...     (folder / name).touch()
    >>> record_chunk_seconds(folder, "chunk_00000.pt", 30.0)
    >>> since = time.time()
    >>> record_chunk_seconds(folder, "chunk_00001.pt", 20.0)
    >>> seconds_before(folder, since), seconds_before(folder, time.time())
    (30.0, 50.0)
    """
    ledger = _ledger(cache_dir)
    return sum(e["seconds"] for name, e in ledger.items() if e["made"] < since and (cache_dir / name).exists())


def chunk_seconds(cache_dir: Path) -> dict[str, float]:
    """What each chunk of `cache_dir` took to make, by file name."""
    return {name: entry["seconds"] for name, entry in _ledger(cache_dir).items()}


def _ledger(cache_dir: Path) -> dict[str, dict]:
    path = cache_dir / SECONDS_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def open_cache(cache_dir: Path, key: dict, chunks: str = "chunk_*.pt") -> None:
    """Empty `cache_dir` of chunks made under another key, then record `key` as its own."""
    key_path = cache_dir / "key.json"
    key = json.loads(json.dumps(key))  # as it reads back from disk (tuples become lists)
    if key_path.exists() and json.loads(key_path.read_text()) != key:
        stale = sorted(cache_dir.glob(chunks))
        tqdm.write(
            f"{cache_dir}: {len(stale)} cached chunks came from other inputs (model, questions, traces or "
            "settings); making them again"
        )
        for path in stale:
            path.unlink()
        (cache_dir / SECONDS_FILE).unlink(missing_ok=True)
    key_path.write_text(json.dumps(key, indent=1) + "\n")


def to_record(policy: BoundaryPolicy, problem: int, sample: int, generation: OfflineCompletion) -> TraceRecord:
    """Join the offline segmentation (answers, positions) with what the engine recorded (hidden states)."""
    recorded = generation.recorded()
    logprobs = generation.logprobs or [0.0] * len(generation.token_ids)
    record = TraceRecord(
        problem, sample, generation.prompt_ids, generation.token_ids, generation.text, generation.finish_reason
    )
    start = 0
    for boundary in policy.segment(generation.prompt_ids, generation.token_ids):
        chunk = logprobs[start : boundary.token_index + 1]
        start = boundary.token_index + 1
        evaluation = recorded.get(boundary.token_index)
        if evaluation is None:
            continue  # cannot happen while online and offline segmentation agree (tested); never invent one
        record.boundaries.append(
            BoundaryRecord(
                boundary.token_index,
                boundary.boundary_index,
                boundary.paragraph_index,
                boundary.thinking_tokens,
                boundary.answer,
                torch.tensor(evaluation.hidden, dtype=torch.float16),
                float(evaluation.end_prob),
                min(chunk),
                sum(chunk) / len(chunk),
            )
        )
    return record
