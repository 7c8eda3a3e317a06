"""What probexit's server costs over vLLM's own OpenAI server, on the same model, flags and prompts.

Run by hand (not in tests); it starts one server at a time, as a separate process, and talks HTTP only:

    .venv/bin/probexit bench server-overhead --model /path/to/model --probe /path/to/probe \\
        --rounds 3 --control --out runs/server_overhead.json -- --dtype float32 --max-model-len 1024

Arguments after `--` are engine flags given to every server. For each server it records the start-up time
(process start to a healthy `/health`), then streams chat completions and records time to first token
(first chunk with text, reasoning or answer), tokens per second, and CPU time per token (the API process
alone, and all the server's processes), sequentially (latency) and `--concurrent-requests` with
`--concurrency` in flight (throughput). Every request asks for exactly `--max-tokens` tokens (`ignore_eos`), so all
servers generate
the same amount whatever the model writes. probexit runs two variants on one server: early exit off for
the request (the serving path alone), and the probe rule with a threshold that never fires (plus the
per-step probe work). `--control` adds vLLM's server with probexit's logits processor loaded as a no-op,
which tells the engine-side cost of a custom processor from the rest. Rounds alternate the order (vLLM,
probexit, then probexit, vLLM, ...) to spread drift; the JSON has each round, the median over rounds and
the best round (neighbours on a shared machine only ever slow a round down). Servers' logs go next to it.
Goal: probexit within 5% of vLLM on time to first token and tokens per second.
"""

from __future__ import annotations

import asyncio
import json
import os
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import httpx

from probexit.benchmarks.servers import free_port, probexit_command, sigterm_exits, start, stop
from probexit.benchmarks.settings import ServerOverheadSettings
from probexit.engine.constants import PROCESSOR_FQCN
from probexit.probes.rules import NEVER

MODEL_NAME = "bench"
# --control: vLLM's own server with probexit's logits processor loaded but unconfigured (a no-op), which
# splits probexit's overhead into what vLLM's custom-processor machinery costs and what the rest costs.
CONTROL = "vllm+processor"
VARIANTS = {
    "probexit (early exit off)": {"early_exit": {"enabled": False}},
    "probexit (probe on, never fires)": {"early_exit": {"threshold": NEVER}},
}


def questions(count: int, seed: int = 0) -> list[str]:
    """Tiny-world style questions (docs/tinyworld.md): integers 0-20, 2-4 operations of + and -."""
    rng = random.Random(seed)
    result = []
    for _ in range(count):
        terms = [str(rng.randint(0, 20))]
        for _ in range(rng.randint(2, 4)):
            terms += [rng.choice("+-"), str(rng.randint(0, 20))]
        result.append(f"What is {' '.join(terms)}?")
    return result


# -- one server process ---------------------------------------------------------------------------------------
def server_command(kind: str, model: str, port: int, probe: str | None, engine_flags: list[str]) -> list[str]:
    common = ["--model", model, "--served-model-name", MODEL_NAME]
    if kind.startswith("vllm"):
        processor = ["--logits-processors", PROCESSOR_FQCN] if kind == CONTROL else []
        address = ["--port", str(port), "--host", "127.0.0.1"]
        return [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            *common,
            *address,
            *processor,
            *engine_flags,
        ]
    return probexit_command(port, [*common, *(["--probe", probe] if probe else []), *engine_flags])


# -- the workload ---------------------------------------------------------------------------------------------
async def one_request(http: httpx.AsyncClient, url: str, question: str, max_tokens: int, extra: dict) -> dict:
    body = {
        "model": MODEL_NAME,
        "messages": [{"role": "user", "content": question}],
        "max_tokens": max_tokens,
        "ignore_eos": True,
        "temperature": 0.0,
        "stream": True,
        "stream_options": {"include_usage": True},
        **extra,
    }
    sent = time.perf_counter()
    first = None
    tokens = 0
    async with http.stream("POST", url, json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
            if first is None and (delta.get("content") or delta.get("reasoning_content")):
                first = time.perf_counter()
    done = time.perf_counter()
    return {"ttft_s": (first or done) - sent, "seconds": done - sent, "tokens": tokens}


async def workload(
    port: int,
    pid: int,
    prompts: list[str],
    max_tokens: int,
    concurrency: int,
    extra: dict,
    warmup: int,
    concurrent_prompts: list[str],
) -> dict:
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    async with httpx.AsyncClient(timeout=600) as http:
        for question in prompts[:warmup]:
            await one_request(http, url, question, max_tokens, extra)
        cpu_before = tree_cpu_seconds(pid)
        sequential = [await one_request(http, url, question, max_tokens, extra) for question in prompts]
        cpu_between = tree_cpu_seconds(pid)
        in_flight = asyncio.Semaphore(concurrency)

        async def limited(question: str) -> dict:
            async with in_flight:
                return await one_request(http, url, question, max_tokens, extra)

        began = time.perf_counter()
        batch = await asyncio.gather(*(limited(question) for question in concurrent_prompts))
        batch_seconds, cpu_after = time.perf_counter() - began, tree_cpu_seconds(pid)
    return {
        "sequential": _stats(sequential, sum(r["seconds"] for r in sequential), cpu_before, cpu_between),
        "concurrent": _stats(batch, batch_seconds, cpu_between, cpu_after),
    }


def tree_cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time (user + system) of a server's API process, and of all its processes (API, engine core,
    workers). It moves less than wall time with the neighbours' load, yet still moves: vLLM's processes
    spin while they wait for a core."""
    import psutil  # vLLM's dependency: present wherever the servers run

    root = psutil.Process(pid)
    seconds = []
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
            seconds.append(times.user + times.system)
        except psutil.NoSuchProcess:
            pass
    return seconds[0], sum(seconds)


def _stats(results: list[dict], seconds: float, cpu_before: tuple, cpu_after: tuple) -> dict:
    ttfts = [1000 * result["ttft_s"] for result in results]
    tokens = sum(result["tokens"] for result in results)
    api_cpu, all_cpu = (after - before for before, after in zip(cpu_before, cpu_after))
    return {
        "requests": len(results),
        "ttft_ms_median": statistics.median(ttfts),
        "ttft_ms_mean": statistics.mean(ttfts),
        "tokens_per_s": tokens / seconds,
        "cpu_ms_per_token": 1000 * all_cpu / tokens,
        "api_cpu_ms_per_token": 1000 * api_cpu / tokens,
    }


# -- the comparison -------------------------------------------------------------------------------------------
def run_server(
    kind: str, settings: ServerOverheadSettings, workdir: Path, index: int, reverse_variants: bool = False
) -> dict:
    port = free_port()
    probe = str(settings.probe) if settings.probe else None
    command = server_command(kind, settings.model, port, probe, list(settings.engine_flags))
    process, startup = start(command, port, workdir / f"{index}-{kind}.log")
    try:
        prompts = questions(settings.requests, seed=settings.seed)
        concurrent_prompts = questions(settings.concurrent_requests, seed=settings.seed + 1)
        variants = {kind: {}} if kind.startswith("vllm") else VARIANTS
        if kind == "probexit" and not settings.probe:
            variants = {name: extra for name, extra in variants.items() if "probe on" not in name}
        if reverse_variants:  # every other probexit server runs its variants in the other order, against drift
            variants = dict(reversed(variants.items()))
        results = {
            name: asyncio.run(
                workload(
                    port,
                    process.pid,
                    prompts,
                    settings.max_tokens,
                    settings.concurrency,
                    extra,
                    settings.warmup,
                    concurrent_prompts,
                )
            )
            for name, extra in variants.items()
        }
    finally:
        stop(process)
    return {"startup_s": startup, "variants": results}


def summarize(runs: list[tuple[str, dict]]) -> dict:
    """Per variant: the median over rounds, and the best round (other jobs on the machine only ever slow a
    round down, so the best is the least disturbed); relative differences against vLLM, positive where
    probexit is slower."""
    by_variant: dict[str, list[dict]] = {}
    startups: dict[str, list[float]] = {}
    for kind, run in runs:
        startups.setdefault(kind, []).append(run["startup_s"])
        for name, result in run["variants"].items():
            by_variant.setdefault(name, []).append(result)
    median = {
        name: {
            mode: {key: statistics.median(r[mode][key] for r in results) for key in results[0][mode]}
            for mode in ("sequential", "concurrent")
        }
        for name, results in by_variant.items()
    }
    best = {
        name: {
            mode: {
                key: (max if key == "tokens_per_s" else min)(r[mode][key] for r in results) for key in results[0][mode]
            }
            for mode in ("sequential", "concurrent")
        }
        for name, results in by_variant.items()
    }
    return {
        "startup_s": {kind: statistics.median(values) for kind, values in startups.items()},
        "results": median,
        "best_round": best,
        "relative_to_vllm": _relative(median),
        "best_round_relative_to_vllm": _relative(best),
    }


def _relative(table: dict) -> dict:
    table = dict(table)
    base = table.pop("vllm")
    relative = {}
    for name, row in table.items():
        slower = {
            "ttft_median_slower_by": _ratio(row, base, "sequential", "ttft_ms_median") - 1,
            "sequential_tokens_per_s_lower_by": 1 - _ratio(row, base, "sequential", "tokens_per_s"),
            "concurrent_tokens_per_s_lower_by": 1 - _ratio(row, base, "concurrent", "tokens_per_s"),
        }
        cpu = {
            f"{mode}_{key}_higher_by": _ratio(row, base, mode, key) - 1
            for mode in ("sequential", "concurrent")
            for key in ("cpu_ms_per_token", "api_cpu_ms_per_token")
        }
        relative[name] = {**slower, **cpu}
    return relative


def _ratio(row: dict, base: dict, mode: str, key: str) -> float:
    return row[mode][key] / base[mode][key]


def run_server_overhead(settings: ServerOverheadSettings) -> dict:
    """Every server of every round, one at a time; writes the report to `settings.out` and returns it."""
    kinds = ["vllm", *([CONTROL] if settings.control else []), "probexit"]
    order = [kind for round_ in range(settings.rounds) for kind in (kinds if round_ % 2 == 0 else kinds[::-1])]
    logs = settings.out.parent / f"{settings.out.stem}-logs"  # the servers' output, for when one fails to start
    logs.mkdir(parents=True, exist_ok=True)
    runs = []
    with sigterm_exits():  # a stopped comparison stops the server it is measuring
        for index, kind in enumerate(order):
            print(f"[{index + 1}/{len(order)}] {kind} ...", flush=True)
            earlier = sum(1 for done, _ in runs if done == kind)
            runs.append((kind, run_server(kind, settings, logs, index, reverse_variants=earlier % 2 == 1)))
    report = {
        "model": settings.model,
        "probe": str(settings.probe) if settings.probe else None,
        "engine_flags": list(settings.engine_flags),
        "workload": {
            "requests": settings.requests,
            "concurrency": settings.concurrency,
            "concurrent_requests": settings.concurrent_requests,
            "max_tokens": settings.max_tokens,
            "warmup": settings.warmup,
            "rounds": settings.rounds,
        },
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        **summarize(runs),
        "runs": [{"server": kind, **run} for kind, run in runs],
    }
    settings.out.parent.mkdir(parents=True, exist_ok=True)
    settings.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary_lines(report: dict) -> list[str]:
    keys = ("startup_s", "relative_to_vllm", "best_round_relative_to_vllm")
    return json.dumps({key: report[key] for key in keys}, indent=2).splitlines()
