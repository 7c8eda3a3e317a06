"""`probexit bench load`: the server under concurrent streaming load, and what early exit costs per token.

Two measurements in one run, over HTTP only, on one server (started here unless `--server` is given):

1. Load: `concurrency` streaming chat requests at once with early exit on. Every request must complete
   (a finish reason and `[DONE]`, no error event), and afterwards `/health` must report no request still
   running in the engine. Reported: time to first token (the first chunk carrying reasoning or answer
   text) and total latency (p50, p99), output tokens per second over the batch.
2. Overhead: the same prompts and seeds with early exit on but a threshold of 1.01 (the probe is consulted
   at every boundary and never fires, so the same tokens come out) against early exit off. Rounds
   alternate the order (on, off, then off, on, ...) to spread drift; the ratio of output tokens per second
   (on / off) is reported per round, as the median, and over all rounds pooled, with whether every
   request produced the same number of tokens and the same text under both. Goal: at most 3% slower.

The machine may be shared: each batch records the load average and, when this run started the server,
the CPU seconds of the server's whole process tree (API, engine core, workers) beside wall-clock time;
CPU per token moves less with the neighbours than tokens per second do.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

import httpx
import numpy as np

from probexit.benchmarks.server_overhead import questions, tree_cpu_seconds
from probexit.benchmarks.settings import LoadSettings
from probexit.probes.rules import NEVER

NEVER_FIRES = {"early_exit": {"enabled": True, "threshold": NEVER}}
DISABLED = {"early_exit": {"enabled": False}}
PROBE_ON = {"early_exit": {"enabled": True}}


class Client:
    """Streams chat completions from one server and reads its health."""

    def __init__(self, base_url: str, api_key: str | None, model: str, sampling: dict):
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        limits = httpx.Limits(max_connections=1024, max_keepalive_connections=1024)
        self.http = httpx.AsyncClient(base_url=base_url.rstrip("/"), headers=headers, timeout=600, limits=limits)
        self.model, self.sampling = model, sampling

    async def stream(self, question: str, seed: int, extra: dict) -> dict:
        """One request's timings, token count, text digest and error (None when it completed)."""
        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": question}],
            "seed": seed,
            "stream": True,
            "stream_options": {"include_usage": True},
            **self.sampling,
            **extra,
        }
        sent = time.perf_counter()
        result = {"ttft_s": None, "tokens": 0, "finish_reason": None, "early_exit": None, "error": None}
        digest, done = hashlib.sha256(), False
        try:
            async with self.http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code != 200:
                    result["error"] = f"HTTP {response.status_code}: {(await response.aread())[:300]!r}"
                    return result | {"seconds": time.perf_counter() - sent}
                async for line in response.aiter_lines():
                    done = done or line == "data: [DONE]"
                    if line.startswith("data: {"):
                        self._read_chunk(json.loads(line[len("data: ") :]), result, digest, sent)
        except httpx.HTTPError as error:
            result["error"] = f"{type(error).__name__}: {error}"
        if result["error"] is None and not (done and result["finish_reason"]):
            result["error"] = "the stream ended without a finish reason and [DONE]"
        return result | {"seconds": time.perf_counter() - sent, "digest": digest.hexdigest()}

    @staticmethod
    def _read_chunk(chunk: dict, result: dict, digest, sent: float) -> None:
        if "error" in chunk:
            result["error"] = chunk["error"].get("message", "error event")
            return
        if chunk.get("usage"):
            result["tokens"] = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices", []):
            delta = choice.get("delta", {})
            text = (delta.get("reasoning_content") or "") + (delta.get("content") or "")
            digest.update(text.encode())
            if text and result["ttft_s"] is None:
                result["ttft_s"] = time.perf_counter() - sent
            if choice.get("finish_reason"):
                result["finish_reason"], result["early_exit"] = choice["finish_reason"], choice.get("early_exit")

    async def probe_seconds(self) -> float:
        """The server's total early-exit work inside decode steps so far (`probexit:probe_step_seconds`)."""
        text = (await self.http.get("/metrics")).text
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("probexit:probe_step_seconds_sum")
        )

    async def running(self) -> int:
        return (await self.http.get("/health")).json()["requests_running"]

    async def settle(self, timeout: float = 10.0) -> tuple[int, float]:
        """Requests still running in the engine once they stop moving (or at the timeout), and the wait."""
        began = time.monotonic()
        running = await self.running()
        while running and time.monotonic() - began < timeout:
            await asyncio.sleep(0.05)
            running = await self.running()
        return running, time.monotonic() - began


async def batch(client: Client, prompts: list[str], seed: int, extra: dict, server_pid: int | None) -> dict:
    """All prompts at once; the requests' results plus the batch's wall time, CPU time and load."""
    cpu_before = tree_cpu_seconds(server_pid)[1] if server_pid else None
    probe_before = await client.probe_seconds()
    began = time.perf_counter()
    results = await asyncio.gather(
        *(client.stream(question, seed + index, extra) for index, question in enumerate(prompts))
    )
    wall = time.perf_counter() - began
    cpu = tree_cpu_seconds(server_pid)[1] - cpu_before if server_pid else None
    probe = await client.probe_seconds() - probe_before
    tokens = sum(result["tokens"] for result in results)
    return {
        "results": results,
        "wall_s": wall,
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "probe_step_s": probe,
        "server_cpu_s": cpu,
        "cpu_ms_per_token": 1000 * cpu / tokens if cpu is not None and tokens else None,
        "loadavg_1m": os.getloadavg()[0],
    }


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "mean": None}
    return {
        "p50": float(np.percentile(values, 50)),
        "p99": float(np.percentile(values, 99)),
        "mean": statistics.mean(values),
    }


async def load_phase(client: Client, prompts: list[str], seed: int, server_pid: int | None) -> dict:
    measured = await batch(client, prompts, seed, PROBE_ON, server_pid)
    results = measured.pop("results")
    running_after, settle_s = await client.settle()
    errors = [result["error"] for result in results if result["error"]]
    completed = [result for result in results if not result["error"]]
    exits = [result for result in completed if (result["early_exit"] or {}).get("triggered")]
    return {
        "requests": len(results),
        "completed": len(completed),
        "errors": len(errors),
        "error_samples": errors[:5],
        "requests_running_after": running_after,
        "settle_s": settle_s,
        "ttft_ms": _percentiles([1000 * r["ttft_s"] for r in completed if r["ttft_s"] is not None]),
        "latency_ms": _percentiles([1000 * r["seconds"] for r in completed]),
        "output_tokens": measured["tokens"],
        "output_tokens_per_s": measured["tokens_per_s"],
        "early_exits": len(exits),
        "wall_s": measured["wall_s"],
        "server_cpu_s": measured["server_cpu_s"],
        "cpu_ms_per_token": measured["cpu_ms_per_token"],
        "loadavg_1m": measured["loadavg_1m"],
    }


async def overhead_phase(client: Client, prompts: list[str], seed: int, rounds: int, server_pid: int | None) -> dict:
    variants = {"never_fires": NEVER_FIRES, "disabled": DISABLED}
    runs: dict[str, list[dict]] = {name: [] for name in variants}
    for round_ in range(rounds):
        order = list(variants) if round_ % 2 == 0 else list(variants)[::-1]
        for name in order:
            runs[name].append(await batch(client, prompts, seed, variants[name], server_pid))
            await client.settle()
    return summarize_overhead(runs)


def summarize_overhead(runs: dict[str, list[dict]]) -> dict:
    """Ratios of never-firing early exit to disabled (above 1: faster), and whether every run produced the
    same tokens as the first disabled one (a mismatch within one variant means the engine's numerics
    moved with the batch, not that early exit changed anything)."""
    on, off = runs["never_fires"], runs["disabled"]
    ratios = [a["tokens_per_s"] / b["tokens_per_s"] for a, b in zip(on, off)]
    pooled = _pooled_rate(on) / _pooled_rate(off)
    cpu = [
        b["cpu_ms_per_token"] / a["cpu_ms_per_token"]
        for a, b in zip(on, off)
        if a["cpu_ms_per_token"] and b["cpu_ms_per_token"]
    ]
    reference = off[0]["results"]
    differing = {
        name: [sum(res["tokens"] != ref["tokens"] for res, ref in zip(run["results"], reference)) for run in runs[name]]
        for name in runs
    }
    differing_text = {
        name: [
            sum(res.get("digest") != ref.get("digest") for res, ref in zip(run["results"], reference))
            for run in runs[name]
        ]
        for name in runs
    }
    median = statistics.median(ratios)
    return {
        "tokens_per_s_ratio_median": median,
        "tokens_per_s_ratio_pooled": pooled,
        "per_round_ratios": ratios,
        "slower_by": 1 - median,
        # tokens per CPU second of the server's processes, on / off: less moved by neighbours
        "cpu_efficiency_ratio_median": statistics.median(cpu) if cpu else None,
        "per_round_cpu_ratios": cpu,
        # the early-exit work inside decode steps, as a share of the wall time: the engine side's cost
        "probe_step_share_of_wall": sum(r["probe_step_s"] for r in on) / sum(r["wall_s"] for r in on),
        "identical_token_counts": not any(any(counts) for counts in differing.values()),
        "identical_text": not any(any(counts) for counts in differing_text.values()),
        "requests_with_other_token_counts": differing,
        "requests_with_other_text": differing_text,
        "errors": sum(1 for run in on + off for res in run["results"] if res["error"]),
        "rounds": {
            name: [{key: value for key, value in run.items() if key != "results"} for run in runs[name]]
            for name in runs
        },
    }


def _pooled_rate(runs: list[dict]) -> float:
    return sum(run["tokens"] for run in runs) / sum(run["wall_s"] for run in runs)


async def run_benchmark(
    base_url: str, api_key: str | None, settings: LoadSettings, server_pid: int | None = None
) -> dict:
    sampling, seed, concurrency, rounds = settings.sampling, settings.seed, settings.concurrency, settings.rounds
    prompts = questions(concurrency, seed=seed)
    async with httpx.AsyncClient(
        base_url=base_url.rstrip("/"), timeout=30, headers={"Authorization": f"Bearer {api_key}"} if api_key else {}
    ) as http:
        model = (await http.get("/v1/models")).raise_for_status().json()["data"][0]["id"]
    client = Client(base_url, api_key, model, sampling)
    try:
        for index in range(settings.warmup):  # compile caches, first-use allocations
            await client.stream(prompts[index % len(prompts)], seed, PROBE_ON)
        loadavg_before = os.getloadavg()
        load = await load_phase(client, prompts, seed, server_pid)
        overhead = await overhead_phase(client, prompts, seed, rounds, server_pid)
    finally:
        await client.http.aclose()
    return {
        "model": model,
        "workload": {"concurrency": concurrency, "rounds": rounds, "seed": seed, "warmup": settings.warmup, **sampling},
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "loadavg_before": loadavg_before,
            "loadavg_after": os.getloadavg(),
        },
        "load": load,
        "overhead": overhead,
    }


def summary_lines(report: dict) -> list[str]:
    load, overhead = report["load"], report["overhead"]
    return [
        f"load: {load['completed']}/{load['requests']} completed, {load['errors']} errors, "
        f"{load['requests_running_after']} left running; TTFT p50 {load['ttft_ms']['p50']:.0f} ms, "
        f"p99 {load['ttft_ms']['p99']:.0f} ms; latency p50 {load['latency_ms']['p50']:.0f} ms, "
        f"p99 {load['latency_ms']['p99']:.0f} ms; {load['output_tokens_per_s']:.0f} output tokens/s",
        f"overhead: never-firing early exit / disabled = {overhead['tokens_per_s_ratio_median']:.3f} tokens/s "
        f"(pooled {overhead['tokens_per_s_ratio_pooled']:.3f}); identical token counts: "
        f"{overhead['identical_token_counts']}",
        f"load average {report['machine']['loadavg_before'][0]:.2f} -> {report['machine']['loadavg_after'][0]:.2f} "
        f"on {report['machine']['cpus']} CPUs",
    ]


def write_report(report: dict, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    path = out / "load.json"
    path.write_text(json.dumps(report, indent=2) + "\n")
    return path
