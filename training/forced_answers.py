"""Forced-answer labels: what the model answers if its thinking is ended at a boundary.

That answer, not the one a text reader finds in the chunk, is what a user gets when the server exits there: the
server forces the end-of-thinking marker and the model writes its final answer. So a boundary's forced answer is
asked of the same engine, on the trace's own prefix: the prompt, the thinking up to and including the boundary's
token, then the marker; the model then writes greedily, for at most `max_tokens` tokens, and the project's one
final-answer reading (`probes.answers.final_answer`) takes its answer. The prefixes of one trace share everything
up to their boundary, so vLLM's prefix cache prefills each trace about once.

Answers are cached per chunk of traces (`DIR/forced/chunk_NNNNN.json`, written atomically), so a rerun resumes.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from probexit.probes.answers import final_answer
from probexit.probes.fingerprint import json_digest
from probexit.training.trace_cache import chunk_seconds, open_cache, record_chunk_seconds

if TYPE_CHECKING:  # the engine (vLLM) is imported by whoever makes one, not by reading this module
    from probexit.engine.offline import OfflineEngine
    from probexit.training.trace_cache import TraceRecord

CHUNK_TRACES = 256


@dataclass
class ForcedAnswers:
    """Per trace, per boundary: the answer the model gives when its thinking ends there (None: it gave none)."""

    answers: list[list[str | None]]
    seconds: float  # spent generating them, a cached chunk counted with the time it took when it was made
    generated_tokens: int

    def cost(self) -> dict:
        boundaries = sum(len(a) for a in self.answers)
        return {
            "traces": len(self.answers),
            "boundaries": boundaries,
            "seconds": round(self.seconds, 1),
            "seconds_per_boundary": self.seconds / boundaries if boundaries else 0.0,
            "seconds_per_trace": self.seconds / len(self.answers) if self.answers else 0.0,
            "generated_tokens_per_boundary": self.generated_tokens / boundaries if boundaries else 0.0,
        }


def forced_prefix(trace: TraceRecord, token_index: int, think_end_id: int) -> list[int]:
    """The token ids the model continues from when its thinking is ended at `token_index` of its completion."""
    return trace.prompt_ids + trace.token_ids[: token_index + 1] + [think_end_id]


def force_answers(
    engine: OfflineEngine,
    traces: list[TraceRecord],
    think_end_id: int,
    max_tokens: int,
    cache_dir: Path,
) -> ForcedAnswers:
    """The forced answer at every boundary of `traces`, generated in batches of CHUNK_TRACES traces."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = {"max_tokens": max_tokens, "think_end_id": think_end_id, "traces": _traces_digest(traces), "with_cost": 1}
    open_cache(cache_dir, key, chunks="chunk_*.json")
    answers: list[list[str | None]] = []
    tokens, names = 0, []
    for start in tqdm(range(0, len(traces), CHUNK_TRACES), desc="forced answers", unit="chunk"):
        path = cache_dir / f"chunk_{start // CHUNK_TRACES:05d}.json"
        if path.exists():
            chunk = json.loads(path.read_text())
        else:
            started = time.monotonic()
            chunk = _force_chunk(engine, traces[start : start + CHUNK_TRACES], think_end_id, max_tokens)
            path.with_suffix(".tmp").write_text(json.dumps(chunk))
            path.with_suffix(".tmp").replace(path)
            record_chunk_seconds(cache_dir, path.name, time.monotonic() - started)
        answers += chunk["answers"]
        tokens += chunk["generated_tokens"]
        names.append(path.name)
    # The ledger holds what each chunk took when it was made, so a resumed job reports the whole labelling's cost.
    made = chunk_seconds(cache_dir)
    return ForcedAnswers(answers, sum(made.get(name, 0.0) for name in names), tokens)


def _force_chunk(engine: OfflineEngine, part: list[TraceRecord], think_end_id: int, max_tokens: int) -> dict:
    prompts = [forced_prefix(t, b.token_index, think_end_id) for t in part for b in t.boundaries]
    generations = engine.generate(prompts, temperature=0.0, max_tokens=max_tokens, progress=False) if prompts else []
    flat = iter(generations)
    answers = [[final_answer(next(flat).text) for _ in trace.boundaries] for trace in part]
    return {"answers": answers, "generated_tokens": sum(len(g.token_ids) for g in generations)}


def _traces_digest(traces: list[TraceRecord]) -> str:
    return json_digest([[t.problem, t.sample, [b.token_index for b in t.boundaries]] for t in traces])
